"""sslspec: a declarative experiment language for SSL theory."""
