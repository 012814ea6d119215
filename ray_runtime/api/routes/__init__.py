"""One router per resource family of the façade."""
