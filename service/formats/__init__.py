"""Wire formats. Each writer produces a header up front (sizes are known before any value is generated) and
takes the tensor's bytes as they come, so a response can be streamed chunk by chunk."""
