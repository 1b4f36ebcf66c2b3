// Package integration holds what only the tests and the benchmarks use: the site lab (sitelab), the DNS lab (dnslab), the one daemon builder (build) and the benchmark programs (bench/...); its test keeps the product's imports from reaching into it or back up the layers.
package integration
