"""An ExampleGen for class-folder image datasets (see component.py)."""
