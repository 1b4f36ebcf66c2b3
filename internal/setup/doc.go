// Package setup is the box's setup state: without a config it closes the firewall to the uplinks, serves the setup page on the LAN behind a one-time code, and imports a config from the boot partition.
package setup
