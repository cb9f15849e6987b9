"""The generative family on MNIST: DDPM, a VAE and a GAN, judged by one yardstick.

:mod:`.diffusion` (noise schedules, the forward process in closed form, the posterior, DDPM and
DDIM samplers), :mod:`.unet` (the denoiser), :mod:`.vae`, :mod:`.gan`, and :mod:`.yardstick`
(FID, KID, confident share and class entropy on the features of an MNIST classifier).
"""
