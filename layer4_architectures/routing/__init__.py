"""Mixture-of-experts routing: a Switch (top-1) and a top-2 MoE feed-forward layer for the GPT, with
the load-balancing and router z-losses, capacity and token dropping."""
