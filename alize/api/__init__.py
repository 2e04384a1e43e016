"""The HTTP adapter: thin routes over the services; errors translated once, here."""
