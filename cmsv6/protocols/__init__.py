"""Wire formats only: JT/T 808 (with the JT/T 1078 signalling it carries) and the JT/T 1078
stream packet. No Twisted, no database, no server package: a test walks the imports."""
