"""The built-in primitives, one module per family (`acquire`, `transform`, `validate`, ...)."""
