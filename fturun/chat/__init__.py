"""chat (layer 2): conversations in one form, chat templates rendered as transformers renders
them, the trained spans of a conversation."""
