"""The Mianzhou Pass card service."""
