"""Inference under the mode grammar: a sampler and an OpenAI-compatible server."""
