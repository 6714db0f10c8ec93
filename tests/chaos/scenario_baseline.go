package chaos

func init() {
	Register(Scenario{
		Name:        BaselineName,
		Description: "no faults: the reference time and the checker's sanity check",
		Short:       true,
	})
}
