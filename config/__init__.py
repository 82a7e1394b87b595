"""The project's configuration: where things are (paths) and the one typed `Settings` every process reads."""
