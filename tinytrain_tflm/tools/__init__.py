"""The tools around the compiler: the scheme search, the demo tasks and the command line."""
