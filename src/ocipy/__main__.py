from ocipy.cli.main import entry

entry()
