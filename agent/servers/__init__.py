"""Inference server clients (SD WebUI API and ComfyUI) behind one small interface."""
