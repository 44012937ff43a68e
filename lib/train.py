"""Alias kept because the README and the model card name it: `python -m lib.train` runs lib.model.train."""
from lib.model.train import main

if __name__ == "__main__":
    main()
