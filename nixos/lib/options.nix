# Option constructors the modules share, so that a plain setting reads as
# one line: its name, its default and what it is.
lib: {
  # A string option with a default.
  strOption =
    default: description:
    lib.mkOption {
      type = lib.types.str;
      inherit default description;
    };
}
