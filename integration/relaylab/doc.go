// Package relaylab holds the voice relay's end-to-end tests (issue 22): the appliance in the lab's box and `appliance relay` in its relay host, a call's media both ways across line faults, inbound calls, a relay that stops answering, and attackers at the relay.
package relaylab
