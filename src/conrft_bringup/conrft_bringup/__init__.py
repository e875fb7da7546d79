"""Launch files, parameter files and the `conrft` command line of the ConRFT stack."""
