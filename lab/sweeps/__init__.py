"""Measuring activation memory and step time across depths and memory modes."""
