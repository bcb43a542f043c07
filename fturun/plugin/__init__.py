"""plugin (layer 2): plugins found through entry points, the registry of components and tasks,
the factory contracts, the plugin API version and the build context a factory gets."""
