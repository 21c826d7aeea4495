// Package chaos holds Switchboard's tests that kill things: real switchboard
// registry and worker processes and real nats-server processes (one, or a
// three-node cluster), killed and restarted while deliveries are in flight,
// with every delivery counted by webhook-id at a real receiver, and
// `switchboard audit` run after the faults to show every delivery owed
// delivered and none unaccounted. It has no
// code of its own; run it with `make test`, which installs the nats-server
// binary it needs into bin/.
package chaos
