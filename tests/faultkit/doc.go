// Package faultkit holds the fault injectors the chaos suite drives: network
// faults between services and their peers, and database statement faults.
package faultkit
