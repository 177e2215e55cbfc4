"""Optional HTTP backends (Ollama for scene splitting, Stable Diffusion for images), stdlib-only."""
