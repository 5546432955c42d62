"""Example loaders that consume the results stream through workers.consumer."""
