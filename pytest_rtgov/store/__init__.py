"""Storage edges: everything that reads or writes files under the state directory."""
