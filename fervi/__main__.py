"""`python -m fervi`: the command line (fervi.app.cli)."""

from fervi.app.cli import main

if __name__ == "__main__":
    main()
