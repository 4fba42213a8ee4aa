"""mrsqc's built-in checks; each module is one check behind :class:`qc_daemon.plugin_api.Check`."""
