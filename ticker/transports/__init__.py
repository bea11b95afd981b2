"""Transports: how readers' connections reach the fan-out.

Each transport turns its connections into `fanout.Subscriber`s and frames messages with a
`fanout.WireFormat` of its own; the fan-out never learns which transport it serves.
"""
