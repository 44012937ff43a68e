"""Alias kept because the README and the model card name it: `python -m lib.evaluate` runs lib.model.evaluate."""
from lib.model.evaluate import main

if __name__ == "__main__":
    main()
