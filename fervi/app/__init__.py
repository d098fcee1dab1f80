"""The application layer: the command line and the supervisor of `fervi up`, the only code that imports
and starts the stages."""
