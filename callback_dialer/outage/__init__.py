"""Outage mode: a known outage holds the missed calls it covers instead of dialling them."""
