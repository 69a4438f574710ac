"""TFX components for image classification: the class-folder ExampleGen, the
contract check and the atomic versioned Pusher."""
