module telltale.test/gohttps

go 1.19
