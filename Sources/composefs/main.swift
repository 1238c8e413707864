import ComposeFSTools

MultiCall.main()
