"""engine (layer 3): the machine a run meets: the one hardware probe, the rules checked before
loading, DeepSpeed/FSDP/launch settings, speed defaults, report integrations, the Hub."""
