module zoomproxybench

go 1.19
