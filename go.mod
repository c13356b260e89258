module github.com/tandemdocs/tandem

go 1.26
