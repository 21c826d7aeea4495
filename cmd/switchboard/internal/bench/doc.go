// Package bench is the harness behind `switchboard bench` and `switchboard
// bench outage`: it measures end-to-end deliveries against this machine's
// raw HTTP ceiling, beside bad receivers or a backlog (Run), and a serve
// process's memory and CPU while one receiver is down (RunOutage).
//
// The flags stay in cmd/switchboard, which fills a Config or an
// OutageConfig and calls Run or RunOutage with its writers. Run starts
// each system it measures through Config.Start, so that the wiring of
// serve stays in the command and this package imports none of it; it
// lives under cmd/switchboard/internal because nothing but that command
// has a use for it.
package bench
