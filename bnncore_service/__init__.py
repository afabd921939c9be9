"""The bnncore model service: definitions → validated build → reports over REST."""
