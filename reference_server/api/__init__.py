"""HTTP layer: one blueprint per resource of the contract."""
