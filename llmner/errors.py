"""Exception types. Every error names what is wrong in one line (the CLI prints ``str(exc)``)."""


class LlmnerError(Exception):
    """Base class of every error llmner raises on purpose."""


class ValidationError(LlmnerError, ValueError):
    """Input (a document, an entity, a file, a schema, a config) is malformed."""


class DataNotFoundError(LlmnerError, FileNotFoundError):
    """A corpus or model file is missing."""


class ConfigError(LlmnerError, ValueError):
    """A configuration value is invalid or inconsistent."""
