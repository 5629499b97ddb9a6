"""Project-wide API pieces: auth endpoints, the exception handler, parsers, fields, throttles."""
