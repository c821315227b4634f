"""adw library: config, providers, routing, streams, runner, pricing.

The CLI lives in ``adws`` and is never imported from here.
"""
