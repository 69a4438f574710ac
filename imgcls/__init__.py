"""The `imgcls` command line: one entry point over trainer/, components/,
pipeline/, serving/, retrain/ and report/."""
