"""Authentication: access tokens and scopes, checked before the exchange is called."""
