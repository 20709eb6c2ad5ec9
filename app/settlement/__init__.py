"""The settlement core: pure functions over plain data. Standard library only."""
