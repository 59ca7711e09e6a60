"""JT/T 1078-2016 media stream packets (the signalling bodies are JT/T 808 messages,
in ``cmsv6.protocols.jt808.messages.jt1078``)."""
