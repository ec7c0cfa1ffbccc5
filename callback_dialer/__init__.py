"""callback-dialer: call back every caller an Asterisk call centre missed."""

__version__ = "0.1.0"
