"""Bearer tokens with a role each: the model, the cached check, the middleware, the commands."""
