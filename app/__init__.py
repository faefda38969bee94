"""Image Gateway: one endpoint for every image-generation model a company pays for."""
