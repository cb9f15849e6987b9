"""Linear (affine) layer: layer 1's `Linear`, re-exported beside the other primitives.

    y = x W^T + b,  W (out_features, in_features), b (out_features,);  (*, in) -> (*, out)
    dL/dx = g W,  dL/dW = g^T x (summed over leading axes),  dL/db = sum of g.

Initialisation U(-1/sqrt(in), 1/sqrt(in)) for W and b, as torch.nn.Linear.
"""

from layer1_autograd import Linear

__all__ = ["Linear"]
