"""The vision family: ResNet (basic and bottleneck blocks), ConvNeXt and EfficientNet (MBConv,
squeeze-and-excitation, compound scaling), an airbench-style fast network (frozen patch
whitening; airbench.py), a FLOP counter, the CIFAR-10 recipe and Grad-CAM."""
